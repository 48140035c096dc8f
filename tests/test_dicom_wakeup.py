"""Association threads that wait for work (`dicom_wakeup`), on real associations over TCP.

Both ends use `on_connection_open` (the SCP's and the SCU's EVT_CONN_OPEN handler): an idle
association's threads pass their loops about 20 times a second instead of 1,000, and
everything that pynetdicom's loops do still happens: C-STOREs and C-ECHOs are answered in
order, a release and an abort from the peer end the association, and the SCP's network
timeout still aborts an association left idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from surveillance.interop.dicom_scp import on_connection_open
from surveillance.interop.dicom_scu import associate

pytestmark = pytest.mark.integration

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.22"


def _sr(n: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SR_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = f"P{n}"
    return ds


def _server(tuned: bool, stored: list[str], network_timeout: float = 60) -> Any:
    ae = AE(ae_title="SURVEILLANCE")
    ae.add_supported_context(Verification)
    ae.add_supported_context(SR_CLASS, ExplicitVRLittleEndian)
    ae.network_timeout = network_timeout

    def handle_store(event: Any) -> int:
        stored.append(event.dataset.PatientID)
        return 0x0000

    handlers: list[Any] = [(evt.EVT_C_STORE, handle_store)]
    if tuned:
        handlers.append((evt.EVT_CONN_OPEN, on_connection_open))
    return ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)


@pytest.fixture
def server() -> Iterator[Callable[..., Any]]:
    started: list[Any] = []

    def start(*args: Any, **kwargs: Any) -> Any:
        started.append(_server(*args, **kwargs))
        return started[-1]

    yield start
    for s in started:
        s.shutdown()


def _acceptor(scp: Any) -> Association:
    deadline = time.monotonic() + 30  # bounds a hang only
    while time.monotonic() < deadline:
        if scp.active_associations:
            return scp.active_associations[0]  # type: ignore[no-any-return]
        time.sleep(0.01)
    raise AssertionError("the SCP has no association")


def _count_calls(obj: Any, name: str) -> list[int]:
    count = [0]
    original = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(*args, **kwargs)

    setattr(obj, name, counted)
    return count


def _idle_passes(*scps: Any) -> list[tuple[int, int]]:
    """Passes of each SCP's DUL loop and association loop in the same idle second (one
    association each): the SCPs share whatever load the machine has."""
    assocs = [associate("127.0.0.1", scp.server_address[1], "PACS", [SR_CLASS])
              for scp in scps]
    assert all(a.is_established for a in assocs)
    acceptors = [_acceptor(scp) for scp in scps]
    deadline = time.monotonic() + 30
    while not all(a.is_established and a.dul.state_machine.current_state == "Sta6"
                  for a in acceptors):  # past the association negotiation
        assert time.monotonic() < deadline, "the SCP did not finish the negotiation"
        time.sleep(0.01)
    counters = [(_count_calls(a.dul, "_process_recv_primitive"),
                 _count_calls(a.dimse, "get_msg")) for a in acceptors]
    time.sleep(1.0)
    passes = [(dul[0], reactor[0]) for dul, reactor in counters]
    for assoc in assocs:
        assoc.release()
    return passes


def test_an_idle_association_wakes_its_threads_rarely(server: Callable[..., Any]) -> None:
    # pynetdicom's own loops as the control, in the same second: about every millisecond
    # on an idle machine (~1,000 passes); on a loaded one a waking thread waits its turn
    # (89 passes measured at load 18, beside 17 of ours), so the control is relative: a
    # loop that lost its wait-for-work would pass about as often as pynetdicom's.
    (tuned_dul, tuned_reactor), (plain_dul, plain_reactor) = _idle_passes(
        server(True, []), server(False, []))
    assert tuned_dul <= 60 and tuned_reactor <= 60, (tuned_dul, tuned_reactor)
    assert min(plain_dul, plain_reactor) >= 3 * max(tuned_dul, tuned_reactor, 1), (
        plain_dul, plain_reactor, tuned_dul, tuned_reactor)


def test_messages_release_and_abort_still_flow(server: Callable[..., Any]) -> None:
    stored: list[str] = []
    scp = server(True, stored)
    port = scp.server_address[1]
    assoc = associate("127.0.0.1", port, "PACS", [SR_CLASS, Verification])
    assert assoc.is_established
    for n in range(40):
        assert assoc.send_c_store(_sr(n)).Status == 0x0000
        if n % 10 == 0:
            assert assoc.send_c_echo().Status == 0x0000
    acceptor = _acceptor(scp)
    assoc.release()
    assert assoc.is_released
    acceptor.join(60)  # bounds a hang only
    assert not acceptor.is_alive() and acceptor.is_released
    assert stored == [f"P{n}" for n in range(40)]

    aborted = associate("127.0.0.1", port, "PACS", [SR_CLASS])
    acceptor = _acceptor(scp)
    aborted.abort()
    acceptor.join(60)  # bounds a hang only
    assert not acceptor.is_alive() and acceptor.is_aborted


def test_the_network_timeout_still_ends_an_idle_association(
    server: Callable[..., Any],
) -> None:
    scp = server(True, [], network_timeout=0.5)
    assoc = associate("127.0.0.1", scp.server_address[1], "PACS", [SR_CLASS])
    assert assoc.is_established
    acceptor = _acceptor(scp)
    acceptor.join(60)  # bounds a hang only
    assert not acceptor.is_alive() and acceptor.is_aborted
    deadline = time.monotonic() + 60
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.01)
    assert assoc.is_aborted
