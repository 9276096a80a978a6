"""Articles from the web: fetching, feeds and sitemaps, extraction, the feed registry and their sync."""
