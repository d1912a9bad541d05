"""``certify batch``: many uploads scanned on local workers, one JSON line each, resumable.

``items`` reads the list of uploads and hashes each one (the key a re-run
skips by), ``state`` records results atomically in ``--state DIR``, ``run``
hands each upload to a worker that scans it in a child process
(``certify.scanchild``) and decides the batch's exit code, ``display`` shows
progress and the summary on stderr. Scans run only in child processes: this
package never imports the pipeline.
"""
