"""The service's rules, below the API and the worker: a job's lifecycle, submission, quotas, who may see what.

Services here raise the errors of `domain/errors.py`, never HTTP answers: `api/http/errors.py` turns each into one.
"""
