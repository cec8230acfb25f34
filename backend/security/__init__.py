"""Authentication, CSRF, study ownership and the audit log of the API."""
