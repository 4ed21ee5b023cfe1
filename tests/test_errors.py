"""``one_line``: the message the CLI prints for a CorefaceError, also when a DataLoader worker raised it."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from coreface_edge.errors import CorefaceError, one_line, raised_while_loading


class _BadImages(Dataset):
    """Sample 1 fails like a truncated JPEG does in decode_crop."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 1:
            raise CorefaceError("/faces/003/frontal_01.jpg: not a decodable image")
        return torch.zeros(2)


class _Chained(_BadImages):
    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            raise OSError("low-level detail")
        except OSError as exc:
            raise CorefaceError("/faces/x.jpg: cannot read [errno 5]") from exc


def _worker_error(dataset: Dataset, workers: int = 1) -> CorefaceError:
    with pytest.raises(CorefaceError) as caught:
        list(DataLoader(dataset, batch_size=2, num_workers=workers))
    return caught.value


def test_one_line_unwraps_a_dataloader_worker_error() -> None:
    exc = _worker_error(_BadImages())
    assert "Original Traceback" in str(exc) and len(str(exc).splitlines()) > 5  # what PyTorch re-raises
    assert one_line(exc) == "/faces/003/frontal_01.jpg: not a decodable image"


def test_one_line_takes_the_last_exception_of_a_chained_worker_traceback() -> None:
    assert one_line(_worker_error(_Chained())) == "/faces/x.jpg: cannot read [errno 5]"


def test_one_line_leaves_plain_messages_alone() -> None:
    assert one_line(CorefaceError("cfg.yaml: optim.lr must be > 0")) == "cfg.yaml: optim.lr must be > 0"
    assert one_line(CorefaceError("two\nlines")) == "two\nlines"  # only PyTorch's wrapper is unwrapped
    assert one_line(ValueError("plain [red] text")) == "plain [red] text"


def test_raised_while_loading_tells_sample_errors_from_others() -> None:
    """torchrun prints a sample's error on whichever rank read it; other errors on local rank 0."""
    assert raised_while_loading(_worker_error(_BadImages(), workers=1))
    assert raised_while_loading(_worker_error(_BadImages(), workers=0))
    with pytest.raises(CorefaceError) as caught:
        _BadImages()[1]
    assert not raised_while_loading(caught.value)
    assert not raised_while_loading(CorefaceError("never raised"))
