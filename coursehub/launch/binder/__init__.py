"""BinderHub's API on the hub: parsing, limits, launches and builds for thebe and Jupyter Book."""
