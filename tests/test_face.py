"""Face front-end on real photos: detector, alignment, quality."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from coreface_edge.errors import CorefaceError
from coreface_edge.face import ARCFACE_TEMPLATE, YuNetDetector, align_faces, estimate_similarity, measure_quality
from coreface_edge.face.detector import Detections, detect_downscaled
from coreface_edge.face.quality import QualityThresholds, frontal_score


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_template_maps_onto_itself():
    matrix = estimate_similarity(ARCFACE_TEMPLATE)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-9)


@pytest.mark.parametrize("angle,scale,shift", [(0.0, 1.0, (0, 0)), (23.0, 2.7, (140, 35)), (-40.0, 0.6, (-12, 80))])
def test_transformed_face_aligns_back_within_one_pixel(angle, scale, shift):
    forward = cv2.getRotationMatrix2D((56, 56), angle, scale)
    forward[:, 2] += shift
    moved = _apply(forward, ARCFACE_TEMPLATE.astype(np.float64))
    back = estimate_similarity(moved)
    assert np.abs(_apply(back, moved) - ARCFACE_TEMPLATE).max() < 1.0


def test_align_faces_puts_landmarks_on_template():
    # A synthetic image with dots at a rotated copy of the template: the warped dots land on the template.
    forward = cv2.getRotationMatrix2D((56, 56), 30, 1.8)
    forward[:, 2] += (60, 40)
    points = _apply(forward, ARCFACE_TEMPLATE.astype(np.float64))
    image = np.zeros((320, 320, 3), np.uint8)
    for x, y in points:
        cv2.circle(image, (round(x), round(y)), 3, (255, 255, 255), -1)
    crops = align_faces(image, np.stack([points, points]))
    assert crops.shape == (2, 112, 112, 3) and crops.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE:
        assert crops[0, round(y), round(x)].max() > 100


def test_detector_finds_one_plausible_face_on_real_photos(face_photos):
    detector = YuNetDetector()
    frontal = [p for p in face_photos if "frontal" in p.name]
    assert len(frontal) >= 4
    for path in frontal:
        image = cv2.imread(str(path))
        found = detector.detect(image)
        assert len(found) == 1, path
        (re, le, nose, rm, lm) = found.landmarks[0]
        assert max(re[1], le[1]) < nose[1] < min(rm[1], lm[1]), f"{path}: eyes above nose above mouth"
        assert re[0] < le[0] and rm[0] < lm[0]
        x, y, w, h = found.boxes[0]
        assert (found.landmarks[0] >= (x, y)).all() and (found.landmarks[0] <= (x + w, y + h)).all()
        assert found.scores[0] > 0.5


def _opencv_yunet_detections(image: np.ndarray) -> Detections:
    """The same YuNet model through OpenCV's own FaceDetectorYN (pre-processing, decoding, NMS)."""
    from coreface_edge.face import default_detector_path

    net = cv2.FaceDetectorYN.create(str(default_detector_path()), "", (image.shape[1], image.shape[0]), 0.5, 0.3, 50)
    _, faces = net.detect(image)
    if faces is None:
        return Detections.empty()
    return Detections(faces[:, :4], faces[:, 4:14].reshape(-1, 5, 2), faces[:, 14])


def _real_frames(face_photos, walkers_path) -> list[np.ndarray]:
    """The committed photos, one at an odd size, and walkers.mp4 frames in full and as the gate views them."""
    frames = [cv2.imread(str(p)) for p in face_photos]
    frames.append(cv2.resize(frames[0], None, fx=2.3, fy=1.7))  # sides that are not multiples of 32
    if walkers_path.is_file():
        capture = cv2.VideoCapture(str(walkers_path))
        for index in range(0, 100, 9):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            if ok:
                frames += [cv2.resize(frame, (768, 432), interpolation=cv2.INTER_AREA)] + ([frame] if index == 0 else [])
        capture.release()
    return frames


def test_onnxruntime_yunet_matches_opencv_face_detector(face_photos):
    """Our ONNX Runtime YuNet gives OpenCV's FaceDetectorYN's faces: same count, boxes, points, scores."""
    from conftest import WALKERS

    detector = YuNetDetector()
    frames = _real_frames(face_photos, WALKERS)
    faces_seen = 0
    for k, frame in enumerate(frames):
        ours, theirs = detector.detect(frame), _opencv_yunet_detections(frame)
        assert len(ours) == len(theirs), f"frame {k}: {len(ours)} faces, OpenCV {len(theirs)}"
        order = np.argsort(-theirs.scores, kind="stable")
        np.testing.assert_allclose(ours.boxes, theirs.boxes[order], atol=0.01)
        np.testing.assert_allclose(ours.landmarks, theirs.landmarks[order], atol=0.01)
        np.testing.assert_allclose(ours.scores, theirs.scores[order], atol=1e-4)
        faces_seen += len(ours)
    assert faces_seen >= len(face_photos)


def test_a_smaller_image_after_a_larger_one_sees_zero_padding(face_photos):
    """One detector, two images of the same padded size (160 x 160): the second one's padding must
    not hold the first one's pixels (no phantom face, no shifted box)."""
    photo = cv2.imread(str(face_photos[0]))
    first, second = cv2.resize(photo, (160, 160)), cv2.resize(photo, (130, 145))
    detector = YuNetDetector()
    detector.detect(first)
    got, fresh, theirs = detector.detect(second), YuNetDetector().detect(second), _opencv_yunet_detections(second)
    assert len(got) == len(fresh) == len(theirs) == 1
    np.testing.assert_allclose(got.boxes, fresh.boxes, atol=1e-4)
    np.testing.assert_allclose(got.boxes, theirs.boxes, atol=0.01)


def test_degenerate_images_give_no_faces_not_a_traceback():
    detector = YuNetDetector()
    assert len(detector.detect(np.zeros((0, 50, 3), np.uint8))) == 0
    assert len(detect_downscaled(detector, np.zeros((1, 2000, 3), np.uint8), 640)) == 0


def test_detector_refuses_a_model_that_is_not_yunet():
    from coreface_edge.liveness.runtime import shipped_liveness

    with pytest.raises(CorefaceError, match="not a YuNet detector"):
        YuNetDetector(shipped_liveness().models[0])


def test_detector_sees_no_face_in_blank_image():
    assert len(YuNetDetector().detect(np.full((240, 320, 3), 128, np.uint8))) == 0


def test_detector_rejects_non_image():
    with pytest.raises(CorefaceError, match="BGR image"):
        YuNetDetector().detect(np.zeros((10, 10), np.uint8))


def test_detector_missing_model_is_one_line_error(tmp_path):
    with pytest.raises(CorefaceError, match="not found"):
        YuNetDetector(tmp_path / "nope.onnx")


def test_downscaled_detection_maps_back_to_full_frame(face_photos):
    image = cv2.imread(str(face_photos[0]))
    big = cv2.resize(image, None, fx=6, fy=6, interpolation=cv2.INTER_CUBIC)
    detector = YuNetDetector()
    full = detect_downscaled(detector, big, max_side=320)
    assert len(full) == 1
    direct = detector.detect(image)
    eye_distance = np.linalg.norm(direct.landmarks[0, 1] - direct.landmarks[0, 0])
    assert np.abs(full.landmarks[0] / 6 - direct.landmarks[0]).max() < 0.15 * eye_distance


def test_order_prefers_large_central_faces():
    det = Detections(
        boxes=np.array([[0, 0, 20, 20], [140, 100, 60, 60], [250, 200, 60, 60]], np.float32),
        landmarks=np.zeros((3, 5, 2), np.float32),
        scores=np.ones(3, np.float32),
    )
    assert list(det.order_by_size_and_centrality((320, 320, 3))) == [1, 2, 0]


def test_quality_of_real_frontal_and_profile(face_photos):
    detector = YuNetDetector()
    frontal = next(p for p in face_photos if "frontal" in p.name)
    image = cv2.imread(str(frontal))
    found = detector.detect(image)
    crop = align_faces(image, found.landmarks)[0]
    q = measure_quality(crop, found.landmarks[0])
    assert q.frontal > 0.6 and q.size > 15 and q.sharpness > 0 and 30 < q.brightness < 230
    assert QualityThresholds(min_sharpness=0).problems(q) == []
    dark = measure_quality((crop * 0.1).astype(np.uint8), found.landmarks[0])
    assert "too dark" in QualityThresholds().problems(dark)


def test_frontal_score_falls_as_nose_moves_to_one_eye():
    centred = ARCFACE_TEMPLATE.copy()
    turned = ARCFACE_TEMPLATE.copy()
    turned[2, 0] = ARCFACE_TEMPLATE[0, 0] + 2
    assert frontal_score(centred) > 0.9
    assert frontal_score(turned) < 0.2
