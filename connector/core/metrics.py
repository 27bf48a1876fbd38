"""Prometheus metrics, shared by the web and worker processes."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_IN = Counter("connector_messages_in_total", "Inbound messages by type and outcome", ["type", "outcome"])
REQUEST_LATENCY = Histogram(
    "connector_inbound_request_seconds",
    "Inbound request latency until the journal commit",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
JOURNAL_LAG = Gauge("connector_journal_lag", "Journal messages waiting for the processor")
PROCESSED = Counter("connector_processed_total", "Journal messages processed by outcome", ["type", "outcome"])
PROCESS_LATENCY = Histogram("connector_process_batch_seconds", "Processor time per journal batch")
PROCESS_RETRIES = Counter(
    "connector_process_batch_retries_total",
    "Journal batches rolled back and retried, by why: transient (connection, deadlock, restart) or contention",
    ["reason"],
)
OUTBOX_DEPTH = Gauge("connector_outbox_depth", "Outbox rows waiting to be sent")
DELIVERED = Counter("connector_delivered_total", "Messages delivered to Segment by type", ["type"])
RETRIED = Counter("connector_retried_total", "Outbound batches retried, by reason", ["reason"])
DEAD_LETTERED = Counter("connector_dead_lettered_total", "Outbound messages dead-lettered, by reason", ["reason"])
SKIPPED_OUT = Counter("connector_outgoing_skipped_total", "Outbound messages not sent, by reason", ["reason"])
DELIVERY_LATENCY = Histogram(
    "connector_delivery_seconds",
    "Time of one /v1/batch delivery",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RETENTION_PURGED = Counter("connector_retention_purged_total", "Rows deleted by retention, by table", ["table"])
ERASED = Counter("connector_erased_profiles_total", "Profiles erased, by what asked (api, message)", ["via"])
