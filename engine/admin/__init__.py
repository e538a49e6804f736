"""The admin endpoint of a live database: HTTP over ``DIR/admin.sock`` (``server``),
the JSON routes (``routes``) and Prometheus metrics (``metrics``)."""
