"""The Kafka side: the embedded broker, topic names, Faust's mended consumer and every private
Faust/aiokafka name we touch (faust_compat), offset continuity, delivery waits, producers and
readers.
"""
