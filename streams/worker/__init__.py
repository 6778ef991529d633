"""The running worker: the Faust app and its agents, views and gauges, the batch processor, the model
and store loading, threads and heap settings.
"""
