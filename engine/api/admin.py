"""Admin API (placeholder router; routes are added in engine/api/admin.py)."""

from fastapi import APIRouter

router = APIRouter(prefix="/admin", tags=["admin"])
