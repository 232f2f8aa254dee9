"""The composition root: builds the services from the settings
(:func:`~hearthwatch.app.services.build_services`), wires them to the api's routers
(:func:`~hearthwatch.app.server.create_app`) and serves them
(:func:`~hearthwatch.app.server.serve`). The only package that knows every part; nothing
imports it but the command line.

Threading: the FastAPI app and its lifespan are event-loop-confined; the
:class:`~hearthwatch.app.services.Services` are built, started and stopped on one thread at a
time (a worker thread of the lifespan), and the parts they hold are thread-safe or
event-loop-confined as their packages say.
"""
