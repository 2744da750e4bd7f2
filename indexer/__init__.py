"""Ingestion side of zhsearch: reading crawl files, analysing Chinese text and
writing the Whoosh index. Nothing here imports the query side."""
