from django.contrib import admin
from django.urls import path

from backend.views import healthz, readyz
from schema.pages import live_page
from schema.schema import schema
from schema.views import GraphQLView

urlpatterns = [
    path("", live_page, name="live"),
    path("admin/", admin.site.urls),
    path("graphql/", GraphQLView.as_view(schema=schema)),
    path("graphql", GraphQLView.as_view(schema=schema)),
    path("healthz", healthz),
    path("readyz", readyz),
]
