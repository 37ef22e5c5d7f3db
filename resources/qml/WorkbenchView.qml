pragma ComponentBehavior: Bound
import QtQuick
import QtQuick.Controls
import QtQuick.Dialogs
import QtQuick.Layouts
import Veraltheim

Item {
    id: view
    required property Workbench workbench
    objectName: "workbenchView"

    FileDialog {
        id: openDialog
        objectName: "openDialog"
        title: "Open input for " + view.workbench.kernel
        fileMode: FileDialog.OpenFile
        nameFilters: view.workbench.inputFilters
        onAccepted: view.workbench.openFile(selectedFile)
    }
    FileDialog {
        id: saveDialog
        objectName: "saveDialog"
        title: "Save result"
        fileMode: FileDialog.SaveFile
        defaultSuffix: view.workbench.resultSuffix.replace(".", "")
        onAccepted: view.workbench.saveResult(selectedFile)
    }

    RowLayout {
        anchors.fill: parent
        anchors.margins: 10
        spacing: 12

        // Left: the kernel list and the parameter form generated from the manifest.
        ColumnLayout {
            Layout.preferredWidth: 320
            Layout.maximumWidth: 360
            Layout.fillHeight: true
            spacing: 6

            Label { text: "Kernel"; font.bold: true }
            ComboBox {
                id: kernelBox
                objectName: "kernelPicker"
                Accessible.name: "Kernel"
                Layout.fillWidth: true
                model: view.workbench.kernels
                textRole: "name"
                enabled: !view.workbench.running
                currentIndex: {
                    for (let i = 0; i < view.workbench.kernels.count; ++i)
                        if (view.workbench.kernels.get(i).name === view.workbench.kernel) return i
                    return -1
                }
                onActivated: view.workbench.selectKernel(currentText)
            }
            Label {
                objectName: "kernelDescription"
                text: view.workbench.kernelDescription
                wrapMode: Text.Wrap
                maximumLineCount: 4
                elide: Text.ElideRight
                opacity: 0.8
                Layout.fillWidth: true
                HoverHandler { id: descHover }
                ToolTip.visible: descHover.hovered && truncated
                ToolTip.text: view.workbench.kernelDescription
            }
            Label { text: "Parameters"; font.bold: true; Layout.topMargin: 6 }
            ScrollView {
                Layout.fillWidth: true
                Layout.fillHeight: true
                clip: true
                ListView {
                    id: paramList
                    objectName: "paramForm"
                    Accessible.name: "Parameters"
                    model: view.workbench.paramModel
                    spacing: 8
                    delegate: ParamField {
                        width: paramList.width - 14
                        onEdited: (v) => view.workbench.setParam(name, v)
                    }
                }
            }
        }

        // Right: input, where, run, progress, result.
        ColumnLayout {
            Layout.fillWidth: true
            Layout.fillHeight: true
            spacing: 8

            RowLayout {
                Layout.fillWidth: true
                Button {
                    objectName: "openButton"
                    text: "Open input\u2026"
                    Accessible.name: "Open input file"
                    enabled: view.workbench.needsInput && !view.workbench.running
                    onClicked: openDialog.open()
                }
                Button {
                    objectName: "useResultButton"
                    text: "Use result as input"
                    Accessible.name: "Use the result as input"
                    visible: view.workbench.inputKind === "rgba8" && view.workbench.resultKind === "image"
                    enabled: !view.workbench.running
                    onClicked: view.workbench.useResultAsInput()
                }
                Label {
                    objectName: "inputSummary"
                    Layout.fillWidth: true
                    elide: Text.ElideMiddle
                    text: view.workbench.kernel === "" ? "No kernel selected."
                        : !view.workbench.needsInput ? "This kernel generates its data from the parameters."
                        : view.workbench.loading ? "Loading " + view.workbench.loadingInput + "\u2026"
                        : view.workbench.inputSummary !== "" ? view.workbench.inputSummary
                        : "No input yet: open a file or drop one below."
                }
            }

            DropArea {
                id: drop
                objectName: "dropArea"
                Layout.fillWidth: true
                Layout.fillHeight: true
                Layout.minimumHeight: 160
                // (not `enabled`: that would also grey out the result shown inside)
                readonly property bool accepting: view.workbench.needsInput && !view.workbench.running
                onEntered: (drag) => { drag.accepted = accepting }
                onDropped: (event) => {
                    if (accepting && event.hasUrls && event.urls.length > 0) {
                        view.workbench.openFile(event.urls[0])
                        event.acceptProposedAction()
                    }
                }
                Rectangle {
                    anchors.fill: parent
                    color: drop.containsDrag ? palette.highlight : palette.base
                    opacity: drop.containsDrag ? 0.3 : 1
                    border.color: palette.mid
                    radius: 4
                }
                RowLayout {
                    anchors.fill: parent
                    anchors.margins: 8
                    spacing: 8
                    Pane {
                        Layout.fillWidth: true
                        Layout.fillHeight: true
                        visible: view.workbench.inputImage !== ""
                        padding: 0
                        background: null
                        Image {
                            objectName: "inputPreview"
                            anchors.fill: parent
                            // decoded at the shown size once, not scaled on every frame
                            sourceSize.width: Math.max(1, width)
                            sourceSize.height: Math.max(1, height)
                            source: view.workbench.inputImage
                            fillMode: Image.PreserveAspectFit
                            cache: false
                            asynchronous: false
                            Accessible.name: "Input preview"
                        }
                        Label { text: "Input"; opacity: 0.7; anchors.left: parent.left; anchors.top: parent.top }
                    }
                    Pane {
                        Layout.fillWidth: true
                        Layout.fillHeight: true
                        padding: 0
                        background: null
                        Image {
                            objectName: "resultPreview"
                            anchors.fill: parent
                            // decoded at the shown size once, not scaled on every frame
                            sourceSize.width: Math.max(1, width)
                            sourceSize.height: Math.max(1, height)
                            visible: view.workbench.resultKind === "image"
                            source: view.workbench.resultImage
                            fillMode: Image.PreserveAspectFit
                            cache: false
                            asynchronous: false
                            Accessible.name: "Result preview"
                        }
                        ScrollView {
                            anchors.fill: parent
                            visible: view.workbench.resultKind !== "" && view.workbench.resultKind !== "image"
                            TextArea {
                                objectName: "resultText"
                                readOnly: true
                                text: view.workbench.resultText
                                font.family: "monospace"
                                wrapMode: TextEdit.Wrap
                                Accessible.name: "Result"
                                background: null
                            }
                        }
                        Label {
                            anchors.centerIn: parent
                            visible: view.workbench.resultKind === "" && view.workbench.inputImage === ""
                            horizontalAlignment: Text.AlignHCenter
                            opacity: 0.6
                            text: view.workbench.needsInput ? "Drop a file here\n(" + view.workbench.inputFilters.join(", ") + ")"
                                                       : "Press Run (Ctrl+R) to generate"
                        }
                        Label {
                            objectName: "resultCaption"
                            text: view.workbench.resultKind === "image" ? "Result: " + view.workbench.resultText : "Result"
                            opacity: 0.7
                            visible: view.workbench.resultKind !== ""
                            anchors.right: parent.right; anchors.top: parent.top
                        }
                    }
                }
            }

            RowLayout {
                Layout.fillWidth: true
                spacing: 8
                Label { text: "Where:" }
                Repeater {
                    model: view.workbench.routes
                    RadioButton {
                        required property var modelData
                        objectName: "where_" + modelData.name
                        text: modelData.label
                        Accessible.name: "Run " + modelData.label
                        checked: view.workbench.where === modelData.name
                        enabled: !view.workbench.running
                        onClicked: view.workbench.setWhere(modelData.name)
                    }
                }
                Item { Layout.fillWidth: true }
                Button {
                    objectName: "runButton"
                    text: "Run (Ctrl+R)"
                    Accessible.name: "Run kernel"
                    highlighted: true
                    enabled: !view.workbench.running && view.workbench.kernel !== ""
                    onClicked: view.workbench.run()
                }
                Button {
                    objectName: "cancelButton"
                    text: "Cancel (Esc)"
                    Accessible.name: "Cancel job"
                    enabled: view.workbench.running
                    onClicked: view.workbench.cancel()
                }
                Button {
                    objectName: "saveButton"
                    text: "Save as\u2026"
                    Accessible.name: "Save result as"
                    enabled: view.workbench.resultKind !== "" && !view.workbench.running
                    onClicked: saveDialog.open()
                }
            }
            ProgressBar {
                objectName: "progressBar"
                Accessible.name: "Progress"
                Layout.fillWidth: true
                from: 0; to: 1
                value: view.workbench.progress
                indeterminate: view.workbench.running && view.workbench.progress === 0
                visible: view.workbench.running
            }
            Label {
                objectName: "resultInfo"
                text: view.workbench.resultInfo
                visible: text !== ""
                wrapMode: Text.Wrap
                Layout.fillWidth: true
            }
        }
    }
}
