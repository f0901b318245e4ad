"""Benchmarks: ka-kemi against the C keepalive module (see docs/benchmarks.md).

Each benchmark runs alone (``python -m bench.<name> [--quick]``: ``routing_cost``,
``ping_scale``, ``detection``, ``rpc_scale``) or all in turn with ``bench.run_all``;
``bench.report`` writes docs/benchmarks.md from their result files.  What they share:

* ``kamailio``: the Kamailio instances (C keepalive, ka-kemi) with the same settings;
* ``responder_proc``: the SIP peers (``responder.py``) run as a process;
* ``rpc_client``: a BINRPC client and the stock kamcmd;
* ``addresses``: listener and destination addresses, peer URIs;
* ``probes``: processes, CPU time and socket drops from ``/proc``;
* ``procs``: started processes and work directories, cleaned up on every exit path;
* ``stats``: median, ratio, verdict and markdown tables;
* ``recording``: machine facts and the result file;
* ``cli``: command line and console header;
* ``paths``: file locations (importing it puts the repository on ``sys.path``).
"""
