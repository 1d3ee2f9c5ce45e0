from django.urls import path

from apps.reports import views

app_name = "reports"

urlpatterns = [
    path("", views.ReportListView.as_view(), name="list"),
    path("new/", views.ReportCreateView.as_view(), name="create"),
    path("<int:pk>/", views.ReportDetailView.as_view(), name="detail"),
    path("<int:pk>/status/", views.ReportStatusView.as_view(), name="status"),
    path("<int:pk>/cancel/", views.ReportCancelView.as_view(), name="cancel"),
    path(
        "<int:pk>/download/csv/",
        views.ReportFileView.as_view(field_name="csv_file"),
        name="download_csv",
    ),
    path(
        "<int:pk>/download/chart/",
        views.ReportFileView.as_view(field_name="chart"),
        name="download_chart",
    ),
    path(
        "<int:pk>/chart/",
        views.ReportFileView.as_view(field_name="chart", as_attachment=False),
        name="chart",
    ),
]
