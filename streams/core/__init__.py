"""Pure logic of one micro-batch: decoding, user state, re-ranking, batch sizing and the batch's data.
No Faust, Kafka, Milvus or Prometheus here.
"""
