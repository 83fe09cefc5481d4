"""The SageMaker real-time endpoint running the GPU container (infra/inference): chat
(llama.cpp), speech (whisper.cpp) and, optionally, embeddings.

`gpu=false` (the default) is the off switch: no model, endpoint config or endpoint exist, and
nothing costs while idle; chat then uses `chatUrl` (any OpenAI-compatible server) if set, and
speech uses `transcriberUrl`. Turning it on needs `modelDataUrl` (model.tar.gz in S3, see
infra/inference/README.md); the image is `inferenceImage` if given, else built from
infra/inference/Dockerfile by `cdk deploy` (needs Docker there, not at synth).
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from aws_cdk import ArnFormat, IgnoreMode, Stack
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from infra.config import ROOT, StackConfig
from infra.nag import suppress

# What the image build needs from the repository; the rest (venv, tests, data) stays out of
# the Docker build context.
IMAGE_CONTEXT = ["**", "!infra/inference/**", "!shared/pasture/**", "**/__pycache__"]


class Inference(Construct):
    """`endpoint_name`/`endpoint_arn` are None when the endpoint is off."""

    def __init__(self, scope: Construct, cid: str, *, config: StackConfig) -> None:
        super().__init__(scope, cid)
        self.endpoint_name: str | None = None
        self.endpoint_arn: str | None = None
        if not config.gpu:
            return
        stack = Stack.of(self)
        assert config.model_data_url is not None  # StackConfig checks it
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Pasture inference endpoint: pull its image and model, write its logs",
        )
        if config.inference_image:
            image = config.inference_image
            repo_name = config.inference_image.split("/", 1)[1].split(":")[0].split("@")[0]
            repo_arn = stack.format_arn(
                service="ecr", resource="repository", resource_name=repo_name
            )
        else:
            asset = ecr_assets.DockerImageAsset(
                self,
                "Image",
                directory=str(ROOT),
                file="infra/inference/Dockerfile",
                exclude=IMAGE_CONTEXT,
                ignore_mode=IgnoreMode.DOCKER,
                platform=ecr_assets.Platform.LINUX_AMD64,
            )
            image = asset.image_uri
            repo_arn = asset.repository.repository_arn
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], resources=[repo_arn]
            )
        )
        role.add_to_policy(
            # ECR's token call has no resource-level permission.
            iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"])
        )
        url = urlparse(config.model_data_url)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[f"arn:{stack.partition}:s3:::{url.netloc}{url.path}"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="/aws/sagemaker/Endpoints/*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/Endpoints"}},
            )
        )
        suppress(
            role,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level"
            " permissions (the latter is limited to SageMaker's namespace by condition);"
            " SageMaker names the endpoint's log streams itself.",
        )
        model = sagemaker.CfnModel(
            self,
            "Model",
            execution_role_arn=role.role_arn,
            primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                image=image,
                model_data_url=config.model_data_url,
                environment={"LLAMA_CTX_SIZE": str(config.chat_context_length)},
            ),
        )
        model.node.add_dependency(role)
        endpoint_config = sagemaker.CfnEndpointConfig(
            self,
            "Config",
            production_variants=[
                sagemaker.CfnEndpointConfig.ProductionVariantProperty(
                    variant_name="AllTraffic",
                    model_name=model.attr_model_name,
                    instance_type=config.gpu_instance_type,
                    initial_instance_count=1,
                    initial_variant_weight=1.0,
                    # llama.cpp and whisper.cpp load their models before /ping says yes.
                    container_startup_health_check_timeout_in_seconds=900,
                    model_data_download_timeout_in_seconds=1200,
                )
            ],
        )
        # A fixed lower-case name: IAM matches SageMaker ARNs on the lower-cased name.
        name = re.sub(r"[^a-z0-9-]", "-", f"{stack.stack_name.lower()}-inference")[:63]
        endpoint = sagemaker.CfnEndpoint(
            self,
            "Endpoint",
            endpoint_name=name,
            endpoint_config_name=endpoint_config.attr_endpoint_config_name,
        )
        self.endpoint_name = endpoint.attr_endpoint_name
        self.endpoint_arn = stack.format_arn(
            service="sagemaker", resource="endpoint", resource_name=name
        )
        suppress(
            endpoint_config,
            "AwsSolutions-SM3",
            "SageMaker refuses a KMS key for instance types with local NVMe instance storage"
            " (the g4dn/g5/g6 GPU types this endpoint is for); their instance store is"
            " encrypted by AWS with a hardware key.",
        )
        suppress(
            model,
            "AwsSolutions-SM1",
            "No VPC (as for the functions and the search domain): the container reaches only"
            " S3 and ECR through SageMaker, and answers only InvokeEndpoint calls signed by IAM.",
        )

    def grant_invoke(self, role: iam.IRole, *, stream: bool) -> None:
        if self.endpoint_arn is None:
            return
        actions = ["sagemaker:InvokeEndpoint"]
        if stream:
            actions.append("sagemaker:InvokeEndpointWithResponseStream")
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=actions, resources=[self.endpoint_arn])
        )
