"""Benchmarks: ka-kemi against the C keepalive module (see docs/benchmarks.md).

Each benchmark runs alone (``python -m bench.<name> [--quick]``: ``routing_cost``,
``ping_scale``, ``detection``, ``rpc_scale``) or all in turn with ``bench.run_all``;
``bench.report`` writes docs/benchmarks.md from their result files.  A benchmark's module
holds its command line and its run; its parts are ``<name>_run`` (instances and
measurements; detection's are split into ``detection_netns``, ``_capture``, ``_poller`` and
``_analysis``) and ``<name>_tables`` (summaries and the report's tables).  What they share:

* ``kamailio``: the Kamailio instances (C keepalive, ka-kemi) with the same settings;
* ``responder_proc``: the SIP peers (``responder.py``) run as a process;
* ``tests.harness.rpc_client`` (shared with the tests): a BINRPC client and the stock kamcmd;
* ``addresses``: destination addresses and peer URIs;
* ``probes``: processes, CPU time and socket drops from ``/proc``;
* ``procs``: started processes and work directories, cleaned up on every exit path;
* ``stats``: median, ratio, verdict and markdown tables;
* ``recording``: machine facts and the result file;
* ``cli``: command line and console header;
* ``paths``: file locations (importing it puts the repository on ``sys.path``).
"""
