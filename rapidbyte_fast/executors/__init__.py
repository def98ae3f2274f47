"""Executors run TaskPlans: ``local`` in threads of this process."""
