"""The admin page: server-rendered views (Jinja2, with htmx for partial updates) of what the admin
API serves, for the course operator who does not live in a terminal. It reads and acts through
:mod:`engine.service`, as the API and the CLI do, so that the three never disagree."""

from engine.web.app import add_admin_page

__all__ = ["add_admin_page"]
