pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Layouts
import Veraltheim

// Developer tools: frames on the link, the dispatcher's decisions, kernel timings, cache state.
Item {
    id: view
    required property Inspector inspector
    objectName: "inspectorView"

    ColumnLayout {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 6
        TabBar {
            id: tabs
            objectName: "inspectorTabs"
            Layout.fillWidth: true
            TabButton { objectName: "inspectorFramesTab"; text: "Frames (" + view.inspector.frames.count + ")"; Accessible.name: "Frames" }
            TabButton { objectName: "inspectorDecisionsTab"; text: "Decisions (" + view.inspector.decisions.count + ")"; Accessible.name: "Decisions" }
            TabButton { objectName: "inspectorTimingsTab"; text: "Kernel timings"; Accessible.name: "Kernel timings" }
            TabButton { objectName: "inspectorCacheTab"; text: "Caches and model"; Accessible.name: "Caches and cost model" }
        }
        StackLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            currentIndex: tabs.currentIndex

            ColumnLayout {
                RowLayout {
                    Label { text: "Newest last; binary payloads show their size."; opacity: 0.7; Layout.fillWidth: true }
                    CheckBox {
                        objectName: "inspectorFollow"
                        id: followFrames
                        text: "Follow"
                        checked: true
                        Accessible.name: "Follow new frames"
                    }
                    Button { objectName: "inspectorClear"; text: "Clear"; Accessible.name: "Clear frames"; onClicked: view.inspector.clearFrames() }
                }
                Table {
                    id: frameTable
                    objectName: "inspectorFrames"
                    Layout.fillWidth: true
                    Layout.fillHeight: true
                    model: view.inspector.frames
                    columns: [["time", "Time", 90], ["direction", "Dir", 40], ["topic", "Topic", 160], ["event", "Event", 140], ["size", "Bytes", 70], ["summary", "Payload", -1]]
                    follow: followFrames.checked
                }
            }
            Table {
                objectName: "inspectorDecisions"
                model: view.inspector.decisions
                columns: [["kernel", "Kernel", 150], ["where", "Where", 60], ["estimate", "Estimate (ms)", 240], ["actual", "Actual", 90], ["why", "Why", -1]]
                follow: true
            }
            Table {
                objectName: "inspectorTimings"
                model: view.inspector.timings
                columns: [["kernel", "Kernel", 170], ["where", "Where", 70], ["runs", "Runs", 60], ["median", "Median", 100], ["last", "Last", 100], ["bytes", "Input", -1]]
            }
            ScrollView {
                TextArea {
                    objectName: "inspectorCache"
                    readOnly: true
                    text: view.inspector.cacheText
                    font.family: "monospace"
                    Accessible.name: "Cache state"
                    background: null
                }
            }
        }
    }
}
