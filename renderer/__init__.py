"""pagecache renderer: article pages through Redis and MongoDB, behind Varnish."""
