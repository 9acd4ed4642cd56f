"""Courses: their content checkouts and the environments their servers run in."""
