"""Campaigns, their variants, segments and imported lists as the API shows and takes them."""

from __future__ import annotations

from rest_framework import serializers

from campaigns.models import AudienceImport, Campaign, CampaignRecipient, CampaignVariant, MarketingSuppression, Segment
from campaigns.services.scheduling import zone_named
from campaigns.services.segments import SegmentInvalid, segment_validate
from whatsapp.models import Provider


class SegmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Segment
        fields = ["id", "name", "description", "filters", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def validate_filters(self, value):
        try:
            return segment_validate(value)
        except SegmentInvalid as exc:
            raise serializers.ValidationError(str(exc)) from None


class AudienceImportSerializer(serializers.ModelSerializer):
    class Meta:
        model = AudienceImport
        fields = ["id", "name", "provider", "status", "file_name", "columns", "rows_total", "rows_imported", "errors",
                  "created_at"]
        read_only_fields = fields


class AudienceUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    provider = serializers.PrimaryKeyRelatedField(queryset=Provider.objects.all())
    file = serializers.FileField(help_text="CSV, UTF-8: a phone column, optional name, language, time_zone and "
                                           "opt_in (the proof of consent), and any columns for {row.<column>}.")
    require_opt_in = serializers.BooleanField(default=True, help_text="Refuse rows without opt-in proof.")


class VariantSerializer(serializers.ModelSerializer):
    class Meta:
        model = CampaignVariant
        fields = ["id", "name", "split_percent", "template", "variables", "text"]
        read_only_fields = ["id"]

    def validate_split_percent(self, value):
        if not 0 < value <= 100:
            raise serializers.ValidationError("between 1 and 100")
        return value


class CampaignSerializer(serializers.ModelSerializer):
    variants = VariantSerializer(many=True, required=False)

    class Meta:
        model = Campaign
        fields = ["id", "name", "provider", "status", "segment", "audience", "start_at", "recurrence",
                  "recurrence_until", "next_run_at", "runs", "send_window_start", "send_window_end", "send_days",
                  "default_time_zone", "at_best_hour", "holdout_percent", "test_percent", "conversion_keyword",
                  "sms_fallback_provider", "sms_fallback_text", "sms_fallback_after_minutes", "winner", "variants",
                  "launched_at", "finished_at", "created_at", "updated_at"]
        read_only_fields = ["status", "next_run_at", "runs", "winner", "launched_at", "finished_at", "created_at",
                            "updated_at"]

    def validate_send_days(self, value):
        if not value or any(day not in "0123456" for day in value) or len(set(value)) != len(value):
            raise serializers.ValidationError("days as digits, 0 (Monday) to 6 (Sunday), each once: e.g. 01234")
        return "".join(sorted(value))

    def validate_default_time_zone(self, value):
        if value and zone_named(value) is None:
            raise serializers.ValidationError(f"{value!r} is not a time zone (e.g. America/Sao_Paulo)")
        return value

    def validate_holdout_percent(self, value):
        if value > 50:
            raise serializers.ValidationError("at most 50")
        return value

    def validate_test_percent(self, value):
        if not 1 <= value <= 100:
            raise serializers.ValidationError("between 1 and 100")
        return value

    def validate_variants(self, value):
        names = [variant.get("name", "A") for variant in value]
        if len(set(names)) != len(names):
            raise serializers.ValidationError("each variant needs a name of its own (A, B, ...)")
        return value


class RecipientSerializer(serializers.ModelSerializer):
    contact_name = serializers.CharField(source="contact.profile_name", read_only=True)
    variant_name = serializers.CharField(source="variant.name", read_only=True, default="")

    class Meta:
        model = CampaignRecipient
        fields = ["id", "run", "contact", "contact_name", "variant", "variant_name", "status", "skip_reason",
                  "time_zone", "due_at", "message", "queued_at", "sent_at", "delivered_at", "read_at", "replied_at",
                  "converted_at", "opted_out_at", "failed_at", "error_code", "fallback_status", "fallback_reason",
                  "fallback_sent_at", "fallback_cost"]
        read_only_fields = fields


class WinnerSerializer(serializers.Serializer):
    variant = serializers.IntegerField(help_text="The id of the variant to send to the rest.")


class ConversionSerializer(serializers.Serializer):
    contact = serializers.IntegerField(help_text="The contact who converted (an id).")


class SuppressionSerializer(serializers.ModelSerializer):
    class Meta:
        model = MarketingSuppression
        fields = ["id", "contact", "provider", "until", "error_code", "strikes", "created_at", "updated_at"]
        read_only_fields = fields
