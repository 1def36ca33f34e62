"""A full Face scenario against latch's built-in engine, with Microsoft's official Python SDK
(azure-ai-vision-face), set up as a device app would: the endpoint, the key, and the
LimitedAccessToken header, nothing else.

Usage: face_sdk_engine.py ENDPOINT CLIENT_KEY LIMITED_ACCESS_TOKEN PHOTOS_DIR
Prints a JSON summary of what the SDK returned.
"""

import json
import os
import sys

from azure.ai.vision.face import FaceAdministrationClient, FaceClient
from azure.ai.vision.face.models import FaceDetectionModel, FaceRecognitionModel
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError

GROUP = "sdk-door-staff"


def main() -> int:
    endpoint, key, token, photos = sys.argv[1:5]
    headers = {"LimitedAccessToken": f"Bearer {token}"}
    credential = AzureKeyCredential(key)
    admin = FaceAdministrationClient(endpoint=endpoint, credential=credential, headers=headers)
    client = FaceClient(endpoint=endpoint, credential=credential, headers=headers)

    def photo(name: str) -> bytes:
        with open(os.path.join(photos, name), "rb") as f:
            return f.read()

    groups = admin.large_person_group
    groups.create(GROUP, name="Door staff", recognition_model=FaceRecognitionModel.RECOGNITION04)
    obama = groups.create_person(GROUP, name="Barack Obama").person_id
    biden = groups.create_person(GROUP, name="Joe Biden").person_id
    added = [
        groups.add_face(GROUP, obama, photo("obama.jpg"), detection_model=FaceDetectionModel.DETECTION03).persisted_face_id,
        groups.add_face(GROUP, obama, photo("obama2.jpg"), detection_model=FaceDetectionModel.DETECTION03).persisted_face_id,
        groups.add_face(GROUP, biden, photo("biden.jpg"), detection_model=FaceDetectionModel.DETECTION03).persisted_face_id,
    ]
    groups.begin_train(GROUP).result()
    training = groups.get_training_status(GROUP)

    def detect(name: str):
        return client.detect(
            photo(name),
            detection_model=FaceDetectionModel.DETECTION03,
            recognition_model=FaceRecognitionModel.RECOGNITION04,
            return_face_id=True,
        )

    probe = detect("obama3.jpg")
    other = detect("biden.jpg")
    identified = client.identify_from_large_person_group(
        face_ids=[probe[0].face_id, other[0].face_id], large_person_group_id=GROUP
    )
    to_person = client.verify_from_large_person_group(
        face_id=probe[0].face_id, large_person_group_id=GROUP, person_id=obama
    )
    not_person = client.verify_from_large_person_group(
        face_id=other[0].face_id, large_person_group_id=GROUP, person_id=obama
    )
    face_to_face = client.verify_face_to_face(face_id1=probe[0].face_id, face_id2=other[0].face_id)
    persons = groups.get_persons(GROUP)

    # The same call without the token: Azure's 403.
    bare = FaceClient(endpoint=endpoint, credential=credential)
    try:
        bare.identify_from_large_person_group(face_ids=[probe[0].face_id], large_person_group_id=GROUP)
        without_token = None
    except HttpResponseError as e:
        without_token = {"status": e.status_code, "code": e.error.code if e.error else None}

    groups.delete(GROUP)
    try:
        groups.get(GROUP)
        after_delete = None
    except HttpResponseError as e:
        after_delete = {"status": e.status_code, "code": e.error.code if e.error else None}

    print(
        json.dumps(
            {
                "persons": {"obama": obama, "biden": biden},
                "persisted_faces": added,
                "listed_persons": sorted(p.person_id for p in persons),
                "training": training.status,
                "detected": [
                    {"face_id": f.face_id, "rectangle": f.face_rectangle.as_dict()} for f in probe
                ],
                "identify": [r.as_dict() for r in identified],
                "verify_to_person": to_person.as_dict(),
                "verify_other_to_person": not_person.as_dict(),
                "verify_face_to_face": face_to_face.as_dict(),
                "without_token": without_token,
                "after_delete": after_delete,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
