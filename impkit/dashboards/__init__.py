"""Release dashboards over the registry: a static page of the trade-offs (``static``)."""
