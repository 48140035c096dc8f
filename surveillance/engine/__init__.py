"""The worker's whole path from input records to effects, as pure batch-oriented code.

In: a batch of records (`records.Record`: topic, partition, offset, key, value, headers)
and the clocks of that batch (wall time, monotonic time). Out (`records.Output`): the
records to produce, the state changes to persist (once per changed key per batch) and the
metric calls to make. No Kafka, no Faust, no module-level state: the Faust worker
(`stream.app`), the tests and the benchmarks drive the same `pipeline.Engine`.
"""
