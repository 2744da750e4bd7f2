"""Web layer of zhsearch (the search page and JSON API), a thin shell over
``search``."""
