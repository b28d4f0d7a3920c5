"""One generation's path, as explicit stages (each tested without a server):

admission (``admission.Admission``: permission, rpm, parse, prompt policy, quote, images lease,
then the reservation and the record in one transaction) → execution (``execution.Execution``:
the engine under a deadline that starts here; returns a ``Report``) → delivery
(``delivery.Delivery``: one safety policy, storage, signed URLs; what it wrote is deleted if a
later step fails) → settlement (``settlement.Settlement``: image rows, charge, final state,
notifications and upstream attempts in one transaction).

``runner.Runner`` drives execution → settlement for one admitted ``Job``, wherever it runs: in
the caller's task (the embedded default, synchronous), in this process's background, or on an
``ideohub worker`` that took the generation id from the queue.
"""
