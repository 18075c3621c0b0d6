from django.contrib import admin
from django.urls import path

from backend.views import healthz, readyz
from schema.schema import schema
from schema.views import GraphQLView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("graphql/", GraphQLView.as_view(schema=schema)),
    path("graphql", GraphQLView.as_view(schema=schema)),
    path("healthz", healthz),
    path("readyz", readyz),
]
