"""Process harnesses for the tests and the demo (a worker process, a Milvus server, a recommendation
watcher). Product code does not import these.
"""
