"""The Milvus side: the vector store, its outage guard and the worker's item catalog.
"""
