"""The service's own upkeep: roles that one process at a time holds (the reaper), and the keeper that holds them.

Every long-lived process of the service (each API process, each worker's main process) runs a keeper, so the
work survives any one of them dying. Imported by both `api` and `worker`; it imports neither.
"""
