"""Know before you download: what a repo holds, which variant fits the box, what is still to fetch."""
