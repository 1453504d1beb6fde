"""Benchmarks of ``smallest_sync`` and its peers against the bundled emulator.

One command prints the table (figure | median | p95 | target | result, then
median | p95 | ours/peer for each peer), the machine and the date::

    .venv/bin/python -m benchmarks.run            # full
    .venv/bin/python -m benchmarks.run --quick    # short
    .venv/bin/python -m benchmarks.run --json results.json --details

Modules:

* :mod:`benchmarks.run` – command line, run order, audio set-up.
* :mod:`benchmarks.latency` – figures 1–2: first audio (client overhead, end to
  end), first audio after an interrupt as a ratio to warm.
* :mod:`benchmarks.interrupt` – figure 3: ``interrupt()`` return time and audio
  heard after it, confirmed on a recording of the sink.
* :mod:`benchmarks.cpu` – figure 4: CPU per second of audio on the device at
  24/44.1 kHz (emulator in another process), the bare-PyAudio floor, and
  parse+decode throughput.
* :mod:`benchmarks.memory` – figure 5: RSS after 1000 utterances vs 10, and the
  player's queue bound under a flood.
* :mod:`benchmarks.imports` – figure 6: import time vs ``import numpy, websocket``.
* :mod:`benchmarks.server` – the emulator in a child process, instrumented to
  report when it received each request and sent its first chunk.
* :mod:`benchmarks.subjects` – the clients measured, behind one interface.
* :mod:`benchmarks.common`, :mod:`benchmarks.report` – statistics, targets,
  machine facts; the table and JSON.
* :mod:`benchmarks.peers` – the official SDK and pipecat as subjects, their own
  virtualenv, and the worker processes that measure them.

Adding a peer: subclass :class:`benchmarks.subjects.Subject` in a module of
:mod:`benchmarks.peers` (connect to a ``ws://`` base URL, say/interrupt/close,
hand PCM to a callback for ``output="sink"``), name it in
``benchmarks.peers.PEERS``, pin its package in ``benchmarks/peers/requirements.txt``
and give its import statement in ``benchmarks.imports.STATEMENTS``. Each figure
then gets its column; what it cannot do raises ``Unsupported`` with the reason
and shows as ``n/a``. Targets are judged on ours only; every figure is measured
for every subject in the same run, one group after another.

Every measurement runs the emulator in a separate process (see
:mod:`benchmarks.server` for why) and uses ``time.monotonic()``, which on Linux is
one clock across processes.
"""
