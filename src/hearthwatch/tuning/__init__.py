"""Measuring a running server from outside: starting one as a child process, open-loop load
generation, the batch-size tuner and its choice rule, load-test profiles, reports and plots.

Client-side tools behind the ``tuning`` extra (``pip install 'hearthwatch[tuning]'``: aiohttp,
matplotlib, tqdm): the server never imports this package, and ``hearthwatch tune`` and
``hearthwatch loadtest`` import it only when they run. Everything here runs on the caller's
thread or its own event loop.
"""
