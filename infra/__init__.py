"""Infrastructure that the API and the worker share, below both: the event publisher, the task publisher, the
broker's Redis connection and the redaction of secrets. It knows the settings and nothing of the service above."""
