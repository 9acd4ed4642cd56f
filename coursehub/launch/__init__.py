"""Launch links: pure parsing and URL building (links.py) and thin hub handlers over them."""
