"""The segmentation server (issue 29): Slicer on a clinic workstation, the GPU in the server room.

``hntumorseg serve`` (:mod:`HNTumorSegLib.commands.serve`) runs :mod:`.app` (the HTTP API,
docs/server-api.md) on uvicorn; :mod:`.jobs` queues jobs on the project's warm sessions;
:mod:`.security` holds the start-up and token rules; :mod:`.uploads` and :mod:`.job_request`
turn an upload into a job's ``request.json``. Light on purpose: importing the package imports
no web stack (FastAPI is imported by :func:`.app.create_app`).
"""
