"""The root server: fans a request out to every shard, gathers, merges.

Pure policies (deadline budget, coverage, hedging, budgets, replica choice)
live in modules that never import grpc; the servicer and the fan-out wire
them to grpc.aio. This package never imports an SDK or the demo.
"""
