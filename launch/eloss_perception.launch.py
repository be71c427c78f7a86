"""Launch eloss_perception_node with its params file and topic remaps.

ros2 launch eloss_perception eloss_perception.launch.py \
    namespace:=perception points_topic:=/sensing/lidar/points \
    image_topic:=/sensing/camera/image_raw camera_info_topic:=/sensing/camera/camera_info
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    default_params = PathJoinSubstitution(
        [FindPackageShare('eloss_perception'), 'config', 'eloss_perception.yaml'])
    return LaunchDescription([
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and its relative topics'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='ROS 2 params file (see config/eloss_perception.yaml)'),
        DeclareLaunchArgument('points_topic', default_value='/points_raw',
                              description='Input sensor_msgs/PointCloud2'),
        DeclareLaunchArgument('image_topic', default_value='/image_raw',
                              description='Input sensor_msgs/Image'),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera_info',
                              description='Input sensor_msgs/CameraInfo'),
        DeclareLaunchArgument('hardware_id', default_value='lidar_camera_rig',
                              description='Hardware id reported in diagnostics'),
        DeclareLaunchArgument('log_level', default_value='info',
                              description='Log level of the node'),
        Node(
            package='eloss_perception',
            executable='eloss_perception_node',
            name='eloss_perception_node',
            namespace=LaunchConfiguration('namespace'),
            output='screen',
            parameters=[
                LaunchConfiguration('params_file'),
                {'hardware_id': LaunchConfiguration('hardware_id')},
            ],
            remappings=[
                ('points', LaunchConfiguration('points_topic')),
                ('image', LaunchConfiguration('image_topic')),
                ('camera_info', LaunchConfiguration('camera_info_topic')),
            ],
            arguments=['--ros-args', '--log-level', LaunchConfiguration('log_level')],
        ),
    ])
