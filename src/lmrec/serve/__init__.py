"""The recommendation service: a bundle served over HTTP with an event store (``lmrec serve``).

Needs the ``serve`` extra (FastAPI, uvicorn): ``pip install 'lmrec[serve]'``.
"""
