"""API keys and tenants: who is calling, and which records they may see.

Every ``/v1`` call carries ``Authorization: Bearer <key>``. A key belongs to exactly one
tenant; every model, dataset and job records the tenant that created it, and a record of
another tenant answers 404 (its existence is not revealed). See :mod:`app.auth.tenancy` for
the helpers a resource uses and :mod:`app.auth.cli` for managing keys.
"""
