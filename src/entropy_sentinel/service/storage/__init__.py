"""Storage of the monitoring service: connections and migrations (`db`), the schema
(`tables`, `migrations/`), writes (`store`), bucket arithmetic (`buckets`) and the
recount that checks the aggregates (`consistency`)."""

__all__: list[str] = []
