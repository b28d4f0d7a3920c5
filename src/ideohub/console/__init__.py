"""The operator and key-holder console (issue 12): static pages served by the server itself
(``static/``, no build step), operator sessions stored in the database (``sessions``), the one
admin-access decision (``auth.operator_denial``) and the ``/console`` routes (``routes``)."""
