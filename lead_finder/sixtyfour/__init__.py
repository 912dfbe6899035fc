"""Client for the Sixtyfour Find Email API (https://api.sixtyfour.ai).

`Client` (blocking) and `AsyncClient` (asyncio) share one core: pure request builders and
parsers (`_protocol`), a pure retry policy (`_retry`), and flows written once as generators
(`_client`). Webhook signatures are in `webhooks`.

    with Client(api_key) as client:
        result = client.find_email({"name": "Jane Doe", "company": "Acme"})
        job = client.find_email_bulk_async(leads)        # store job.task_id now
        done = client.wait(job.task_id)                  # results carry .ref
"""

from ._client import AsyncClient, Client
from ._protocol import DEFAULT_BASE_URL, MAX_BULK_LEADS, REF_FIELD, Job, JobState
from .webhooks import SIGNATURE_HEADER, sign_payload, verify_signature

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BULK_LEADS",
    "REF_FIELD",
    "SIGNATURE_HEADER",
    "AsyncClient",
    "Client",
    "Job",
    "JobState",
    "sign_payload",
    "verify_signature",
]
