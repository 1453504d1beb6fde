"""The peers: other Python clients of the Waves live TTS socket, measured next to ours.

* ``smallestai``: the official SDK's sync ``smallestai.waves.WavesStreamingTTS``
  (:mod:`benchmarks.peers.sdk`).
* ``pipecat``: pipecat's ``SmallestTTSService`` in a pipeline
  (:mod:`benchmarks.peers.pipecat_tts`).

They are installed into a virtualenv of their own, ``benchmarks/.peers-venv``
(pins in ``benchmarks/peers/requirements.txt``; built on first use by
:mod:`benchmarks.peers.venv`), so their dependencies (pipecat alone brings ~80
packages) never touch the project's ``.venv``. Each figure group runs in one
worker process per peer (:mod:`benchmarks.peers.worker`, on that venv's python,
with the repository on ``PYTHONPATH``), which calls the same group function
ours goes through with the peer's :class:`~benchmarks.subjects.Subject` and
writes the figures as JSON; :mod:`benchmarks.peers.remote` starts it, bounds it
with a timeout (the worker and everything it started are killed, and its
figures say so) and merges its results into the main process's figures. The
emulator a worker talks to still runs on the main venv's python
(``SMALLEST_BENCH_EMULATOR_PYTHON``), so every subject meets the same server.
"""
from __future__ import annotations

import importlib
from typing import Dict, Type

from ..subjects import Subject

#: Peer name -> "module:Class", imported only inside a worker (the peers' venv).
PEERS: Dict[str, str] = {
    "smallestai": "benchmarks.peers.sdk:OfficialSDK",
    "pipecat": "benchmarks.peers.pipecat_tts:Pipecat",
}


def load(name: str) -> Type[Subject]:
    """The subject class of peer ``name`` (KeyError if there is none)."""
    module, _, cls = PEERS[name].partition(":")
    subject: Type[Subject] = getattr(importlib.import_module(module), cls)
    return subject
