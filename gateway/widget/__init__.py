"""The web chat widget (SPEC §14): its public API, CORS, visitor tokens, script and demo page."""

from gateway.widget.api import ENDPOINTS as API_ENDPOINTS
from gateway.widget.pages import ENDPOINTS as PAGE_ENDPOINTS

ENDPOINTS = [*API_ENDPOINTS, *PAGE_ENDPOINTS]

__all__ = ["ENDPOINTS"]
