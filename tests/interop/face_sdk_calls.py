"""Drive latch's Face front with Microsoft's official Python SDK (azure-ai-vision-face).

Usage: face_sdk_calls.py ENDPOINT CLIENT_KEY LIMITED_ACCESS_TOKEN
The SDK is used as any device app would, adding only the LimitedAccessToken header through
its per-call `headers` hook. Prints a JSON summary of what the SDK returned.
"""

import json
import sys

from azure.ai.vision.face import FaceClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

FACE_1 = "c5c24a82-6845-4031-9d5d-978df9175426"
FACE_2 = "015839fb-fbd9-4f79-ace9-7675fc2f1dd9"


def main() -> int:
    endpoint, key, token = sys.argv[1:4]
    client = FaceClient(endpoint=endpoint, credential=AzureKeyCredential(key))
    headers = {"LimitedAccessToken": f"Bearer {token}"}
    identified = client.identify_from_large_person_group(
        face_ids=[FACE_1], large_person_group_id="door-staff", headers=headers
    )
    verified = client.verify_face_to_face(face_id1=FACE_1, face_id2=FACE_2, headers=headers)
    try:
        client.identify_from_large_person_group(face_ids=[FACE_1], large_person_group_id="door-staff")
        refused = None
    except HttpResponseError as e:
        refused = {"status": e.status_code, "code": e.error.code if e.error else None}
    print(
        json.dumps(
            {
                "identify": [r.as_dict() for r in identified],
                "verify": verified.as_dict(),
                "without_token": refused,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
