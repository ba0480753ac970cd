"""The platform store: elders, family contacts, work orders, calls, alerts, notifications, schedules.

- ``models``  — SQLAlchemy ``Base`` and the core tables (other areas subclass ``Base`` too)
- ``db``      — ``create_engine_for(settings)``, ``session_factory(engine)`` (nothing created at import)
- ``migrate`` — Alembic driven from code (``upgrade_heads(url)``); revisions in ``migrations/``
- ``store``   — ``PlatformStore``, the async repository (frozen dataclass results, ``StoreError``)
- ``api``     — ``setup_platform_api(app)`` (on ``app[SERVICES_KEY]``), ``create_app(settings)``, ``store_health(services)``
- ``sla``     — ``SlaWatcher`` (dispatch/answer SLA alerts); ``notify`` — outbox delivery, ``Sender``
- ``db_cli``  — ``assistant db upgrade|current|seed-demo``
"""
