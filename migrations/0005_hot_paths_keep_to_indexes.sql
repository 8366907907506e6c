-- The message functions keep to their indexes, whatever the planner's statistics say.
--
-- A queue's statistics are always out of date: the table is analyzed while it holds a
-- few rows and is full of dead ones a moment later. PL/pgSQL caches one generic plan
-- per statement per connection, made with the statistics of that moment, and with a
-- "small" table it chose a sequential scan for `id = ANY (ids)`: every consume then read
-- the whole table (~20 ms instead of ~1 ms, a third of the benchmark's throughput on
-- a connection that had lived through one ANALYZE). With sequential scans priced out,
-- every statement here uses the index it was written for.
ALTER FUNCTION publish_messages(TEXT, JSON) SET enable_seqscan = off;
ALTER FUNCTION consume_messages(TEXT, TEXT, INTEGER) SET enable_seqscan = off;
ALTER FUNCTION ack_messages(TEXT, BIGINT[], INTEGER) SET enable_seqscan = off;
ALTER FUNCTION nack_messages(TEXT, BIGINT[], INTEGER) SET enable_seqscan = off;
ALTER FUNCTION release_deliveries(subscriptions, BIGINT[]) SET enable_seqscan = off;
ALTER FUNCTION cleanup_stuck_messages(INTEGER) SET enable_seqscan = off;
ALTER FUNCTION list_dlq_messages(TEXT, INTEGER, INTEGER) SET enable_seqscan = off;
ALTER FUNCTION reprocess_dlq_messages(TEXT, BIGINT[]) SET enable_seqscan = off;
