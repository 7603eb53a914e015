"""dugray's Ray Serve application: the HTTP API over :mod:`dugray.session`.

``serve run serve.app:deployment`` (or ``serve deploy serve/config.yaml``). Read
``serve/app.py`` top to bottom for the deployment graph; the other modules here are
the small plain-Python parts it uses (settings, image decoding, multipart parsing,
the bounded session table, batched forward, JSON views, errors), testable without Ray.
"""
