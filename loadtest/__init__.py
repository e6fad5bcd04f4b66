"""Load and latency benchmarks: the scenarios of ``scatter bench``. Nothing imports this package.

Modules, one concept each:

* ``bench``             the ``scatter bench`` command: the one list of scenarios
* ``locust_scenarios``  steady, ramp, tail-locust, fault, overload (Locust users, HTML reports)
* ``overhead``, ``compare``, ``fanout``, ``tail``, ``faults``, ``demo_scale``  the closed-loop benchmarks
* ``deployments``       the one builder of the deployments they (and tests/_cluster.py) run
* ``processes``         processes started beside or instead of a deployment (a second root)
* ``closed_loop``       the one closed-loop generator (grpc.aio, N in flight)
* ``procfs``            CPU time and memory of a process, from /proc
* ``locustfile``, ``ramp_shape``, ``queries``, ``tally``  the Locust user, its workload and its tally
* ``naive_root``, ``multi_shard_leaf``  processes the benchmarks run (the yardstick root, a light leaf)

Only public faces of the framework and the demo are imported here (tests/test_boundaries.py).
"""
