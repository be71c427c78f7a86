"""Launch eloss_perception_node with its params file and topic remaps, and
optionally RViz 2 with config/eloss_perception.rviz (cloud, boxes, image).

ros2 launch eloss_perception eloss_perception.launch.py \
    namespace:=perception points_topic:=/sensing/lidar/points \
    image_topic:=/sensing/camera/image_raw camera_info_topic:=/sensing/camera/camera_info \
    use_sim_time:=true rviz:=true fixed_frame:=base_link
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    default_params = PathJoinSubstitution(
        [FindPackageShare('eloss_perception'), 'config', 'eloss_perception.yaml'])
    rviz_config = PathJoinSubstitution(
        [FindPackageShare('eloss_perception'), 'config', 'eloss_perception.rviz'])
    input_remaps = [
        ('points', LaunchConfiguration('points_topic')),
        ('image', LaunchConfiguration('image_topic')),
        ('image/compressed', LaunchConfiguration('compressed_image_topic')),
        ('camera_info', LaunchConfiguration('camera_info_topic')),
    ]
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its relative topics'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='ROS 2 params file (see config/eloss_perception.yaml)'),
        DeclareLaunchArgument('points_topic', default_value='/points_raw',
                              description='Input sensor_msgs/PointCloud2'),
        DeclareLaunchArgument('image_topic', default_value='/image_raw',
                              description='Input sensor_msgs/Image'),
        DeclareLaunchArgument('compressed_image_topic', default_value='/image_raw/compressed',
                              description='Input sensor_msgs/CompressedImage (jpeg/png), as most bags carry'),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera_info',
                              description='Input sensor_msgs/CameraInfo'),
        DeclareLaunchArgument('hardware_id', default_value='lidar_camera_rig',
                              description='Hardware id reported in diagnostics'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Follow /clock (bag replay with --clock)'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='Log level of the node'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='Also start RViz 2 with config/eloss_perception.rviz'),
        DeclareLaunchArgument('fixed_frame', default_value='velodyne',
                              description="RViz fixed frame: the point cloud's frame_id (or one tf connects to it)"),
        Node(
            package='eloss_perception',
            executable='eloss_perception_node',
            name='eloss_perception_node',
            namespace=LaunchConfiguration('namespace'),
            output='screen',
            parameters=[
                LaunchConfiguration('params_file'),
                # one dict per parameter, as the XML twin's <param> elements
                {'hardware_id': LaunchConfiguration('hardware_id')},
                {'use_sim_time': LaunchConfiguration('use_sim_time')},
            ],
            remappings=input_remaps,
            arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
        ),
        # in the node's namespace with its remaps: the config's relative topics
        # resolve to what the node reads and publishes
        Node(
            package='rviz2',
            executable='rviz2',
            name='rviz2',
            namespace=LaunchConfiguration('namespace'),
            arguments=['-d', rviz_config, '-f', LaunchConfiguration('fixed_frame')],
            remappings=input_remaps,
            condition=IfCondition(LaunchConfiguration('rviz')),
        ),
    ])
